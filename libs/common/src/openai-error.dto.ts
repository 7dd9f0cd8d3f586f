import { ApiProperty } from '@nestjs/swagger';

class OpenAIErrorDetailDto {
  @ApiProperty()
  message!: string;

  @ApiProperty({ example: 'invalid_request_error' })
  type!: string;

  @ApiProperty({ type: String, nullable: true, example: 'input' })
  param!: string | null;

  @ApiProperty({ type: String, nullable: true, example: 'invalid_api_key' })
  code!: string | null;
}

/** The body of every error response. */
export class OpenAIErrorDto {
  @ApiProperty({ type: OpenAIErrorDetailDto })
  error!: OpenAIErrorDetailDto;
}
